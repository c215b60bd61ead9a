"""calibration_sets: every source x seed a comparison needs, generated in one pass and cached."""

import torch

from dsg_core.experiments import SetCache, calibration_set, calibration_sets
from dsg_core.generation import GenerationConfig
from dsg_core.models import get_spec, load_model


def test_calibration_sets_generate_together_equal_alone_and_cache(tmp_path):
    spec, model = get_spec("resnet20_mnist"), load_model("resnet20_mnist")
    sources = ["zeroq", "dsg", "sda+lse+sci", "gaussian", "real"]
    bases = [GenerationConfig(samples=4, batch_size=4, iterations=3, margin_samples=16, seed=s) for s in (0, 1)]
    seen = []
    made = calibration_sets(model, spec, sources, bases, cache=SetCache(tmp_path / "cache"), progress=seen.append)
    assert list(made) == [(src, seed) for seed in (0, 1) for src in sources]
    assert len(seen) == 3 and seen[0].stage == "generate"  # one joint pass of 3 iterations
    assert len(seen[0].extra["sets"]) == 4  # zeroq and dsg at both seeds; gaussian needs no pass
    assert [("dsg", 0), ("sda+lse+sci", 0)] in seen[0].extra["keys"]  # one set, two sources
    assert made[("dsg", 0)][1] is made[("sda+lse+sci", 0)][1]  # the same config is generated once
    assert made[("real", 1)][1] is None and made[("real", 1)][0].shape == (4, *spec.input_shape)
    for (source, seed), (images, _) in made.items():
        alone, _ = calibration_set(model, spec, source, bases[seed])
        assert torch.allclose(images, alone, rtol=1e-4, atol=1e-3 * alone.abs().max().item()), (source, seed)
    again = []
    cached = calibration_sets(model, spec, sources, bases, cache=SetCache(tmp_path / "cache"), progress=again.append)
    assert again == [] and all(torch.equal(cached[k][0], made[k][0]) for k in made)


def test_generated_sets_side_by_side_on_two_workers_equal_one_joint_pass():
    """workers=2 deals the optimized configs over two passes run side by side: every set is the one
    the joint pass makes, and the Gaussian set (no optimization) is made too."""
    from dsg_core.experiments import generated_sets
    spec, model = get_spec("resnet20_mnist"), load_model("resnet20_mnist")
    base = GenerationConfig(samples=4, batch_size=4, iterations=3, margin_samples=16)
    cfgs = {(m, s): base.replace(method=m, seed=s) for m in ("zeroq", "dsg", "gaussian") for s in (0, 1)}
    joint = generated_sets(model, spec, cfgs)
    seen = []
    split = generated_sets(model, spec, cfgs, workers=2, progress=seen.append)
    assert {len(p.extra["sets"]) for p in seen} == {2}  # two passes of two optimized sets each
    for key in cfgs:  # float tolerance as above: Adam's normalized steps amplify a reordered sum's last bits
        ref = joint[key].images
        assert torch.allclose(split[key].images, ref, rtol=1e-4, atol=1e-3 * ref.abs().max().item()), key
