"""Data-free quantization-aware training in the GDFQ framework, with the plain GDFQ generator, the
DSG generator, or real images (the real-data fine-tuning comparison).

    1. warmup: train the conditional generator G against the frozen FP32 model (CE + BN loss);
    2. PTQ:    quantize with the project's quantizer, activation ranges calibrated on G's samples
               (this is the ``ptq_top1`` the QAT result is compared with);
    3. QAT:    each step G trains one more step (GDFQ) and the quantized model trains on the batch
               G produced, loss = kd_weight * T^2 KL(FP32 || Q) + ce_weight * CE(Q, y), SGD
               (Nesterov momentum 0.9, weight decay 1e-4), gradients through fake quantization by
               the straight-through estimator, activation ranges by EMA (``ranges.py``).
               BN layers of the quantized model stay in eval mode (running statistics fixed; their
               affine parameters train), as in GDFQ's trainer.
    4. after every QAT epoch: top-1 on the real test split (the curve) and a checkpoint.

Progress: one record per step (``parts``: the generator's ``g_*`` losses, the model's ``loss``/``kd``/
``ce``), and one per finished epoch whose ``extra`` holds ``curve`` (the accuracy rows so far) and,
for a generator, ``samples``/``labels`` (one image per class from fixed latent codes).

[Xu et al., "Generative Low-bitwidth Data Free Quantization", ECCV 2020; Qin et al., DSG, TPAMI 2023]
"""

from __future__ import annotations

import math
import os
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import ConfigError, DataError, ModelError, NumericalError
from ..evaluate import evaluate_quantized, logits
from ..generation.generator import fast_copy
from ..generation.stats import bn_targets
from ..progress import CancelFn, Progress, ProgressFn, check_cancel
from ..quant import QuantConfig, quantize_model
from ..quant.modules import convert
from ..quant.quantizer import check_bits
from .batches import GeneratedBatches, RealBatches
from .generator import CONDITIONINGS, ConditionalGenerator
from .losses import SDA_MODES, GeneratorLoss, GeneratorObjective, kd_loss
from .ranges import RANGE_RULES, RangeEMA, refresh_weight_ranges

GENERATORS = ("gdfq", "dsg", "real")
CHECKPOINT_FORMAT = "dsg-lab/qat-checkpoint/1"


@dataclass(frozen=True)
class QATConfig:
    """One QAT run. Defaults train resnet20_mnist in about 2.5 minutes on one CPU thread (measured:
    146 s for 1 warmup + 4 QAT epochs of 50 steps, batch 32, DSG generator, W4A4)."""
    wbits: int = 4
    abits: int = 4
    generator: str = "dsg"          # "gdfq" (CE + BN loss), "dsg" (+ SDA/LSE/SCI), "real" (real images)
    epochs: int = 4                 # QAT epochs (after the warmup)
    iters_per_epoch: int = 50
    batch_size: int = 32
    warmup_epochs: int = 1          # generator-only epochs before PTQ and QAT (GDFQ: 4 of 400)
    generator_lr: float = 1e-3      # Adam, betas (0.5, 0.999) (GDFQ)
    model_lr: float = 1e-3          # SGD on the quantized model, cosine-decayed to 0 over QAT
    momentum: float = 0.9
    weight_decay: float = 1e-4
    kd_temperature: float = 20.0    # GDFQ / DSG: T = 20
    kd_weight: float = 1.0
    ce_weight: float = 1.0          # CE of the quantized model on the sampled (or true) labels
    train_generator_in_qat: bool = True  # GDFQ keeps training G while the quantized model trains
    latent_dim: int = 100
    generator_width: int = 64       # channels of the generator's first block (GDFQ: 128; 64 is 4x cheaper)
    generator_cond: str = "concat"  # label conditioning: "concat" or "mul" (GDFQ: z * E[y]; learns far slower here)
    gen_ce_weight: float = 1.0      # generator: CE of the FP32 model on the sampled labels
    bn_weight: float = 0.1          # generator: BN-statistics loss (GDFQ's 0.1)
    sda: bool = True                # DSG switches, used only with generator="dsg"
    lse: bool = True
    sci: bool = True
    epsilon: float = 0.9
    lse_weight: float = 2.0
    sci_weight: float = 1.0
    sda_mode: str = "hinge"         # "hinge" (paper) or "reference" (the DSG QAT code's |gap - margin|)
    range_momentum: float = 0.9     # EMA beta of activation ranges (GDFQ: 0.9; 1 keeps the PTQ ranges)
    calibrator: str = "minmax"      # activation range rule of PTQ and of the EMA
    calib_samples: int = 64         # images for the initial (PTQ) calibration
    eval_samples: int | None = None  # evaluate on the first N test images only (None: all)
    seed: int = 0

    def validate(self) -> "QATConfig":
        check_bits(self.wbits, "wbits")
        check_bits(self.abits, "abits")
        if self.generator not in GENERATORS:
            raise ConfigError(f"generator must be one of {', '.join(GENERATORS)}, not {self.generator!r}")
        if self.calibrator not in RANGE_RULES:
            raise ConfigError(f"calibrator must be one of {', '.join(RANGE_RULES)}, not {self.calibrator!r}")
        for name in ("epochs", "iters_per_epoch", "batch_size", "latent_dim", "generator_width", "calib_samples"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"{name} must be a positive integer, got {v!r}")
        if isinstance(self.warmup_epochs, bool) or not isinstance(self.warmup_epochs, int) or self.warmup_epochs < 0:
            raise ConfigError(f"warmup_epochs must be an integer >= 0, got {self.warmup_epochs!r}")
        if self.batch_size < 2:
            raise ConfigError("batch_size must be at least 2 (the generator normalizes over the batch)")
        if self.eval_samples is not None and (not isinstance(self.eval_samples, int) or self.eval_samples < 1):
            raise ConfigError(f"eval_samples must be a positive integer or None, got {self.eval_samples!r}")
        for name in ("generator_lr", "model_lr", "kd_temperature"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) > 0):
                raise ConfigError(f"{name} must be a finite number > 0, got {getattr(self, name)!r}")
        for name in ("kd_weight", "ce_weight", "weight_decay"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) >= 0):
                raise ConfigError(f"{name} must be a finite number >= 0, got {getattr(self, name)!r}")
        if self.kd_weight == 0 and self.ce_weight == 0:
            raise ConfigError("kd_weight and ce_weight are both 0: the quantized model would have nothing to learn")
        if not (0 <= self.momentum < 1 and 0 <= self.range_momentum <= 1):
            raise ConfigError("momentum must be in [0, 1) and range_momentum in [0, 1] (1: ranges stay as calibrated)")
        if self.generator_cond not in CONDITIONINGS:
            raise ConfigError(f"generator_cond must be one of {', '.join(CONDITIONINGS)}, not {self.generator_cond!r}")
        if self.sda_mode not in SDA_MODES:
            raise ConfigError(f"sda_mode must be one of {', '.join(SDA_MODES)}, not {self.sda_mode!r}")
        self.generator_loss().validate()
        return self

    def generator_loss(self) -> GeneratorLoss:
        """The generator's objective; the DSG switches count only for generator="dsg"."""
        dsg = self.generator == "dsg"
        return GeneratorLoss(ce_weight=self.gen_ce_weight, bn_weight=self.bn_weight, sda=dsg and self.sda,
                             epsilon=self.epsilon, sda_mode=self.sda_mode, lse=dsg and self.lse,
                             lse_weight=self.lse_weight, sci=dsg and self.sci, sci_weight=self.sci_weight)

    @property
    def generative(self) -> bool:
        return self.generator != "real"

    @property
    def warmup(self) -> int:
        return self.warmup_epochs if self.generative else 0

    def quant_config(self) -> QuantConfig:
        return QuantConfig(wbits=self.wbits, abits=self.abits, quantizer=self.calibrator, seed=self.seed)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "QATConfig":
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ConfigError(f"unknown QAT settings: {', '.join(sorted(unknown))}")
        return cls(**d)


@dataclass
class QATResult:
    fp32_top1: float
    ptq_top1: float                 # the same quantizer calibrated on the source's samples, before QAT
    quant_top1: float               # after QAT
    curve: list[dict]               # epoch 0 = PTQ, then one row per QAT epoch
    seconds: float
    config: dict
    resumed_from: int = 0           # epochs (warmup included) loaded from the checkpoint
    model: nn.Module | None = field(default=None, repr=False)       # the fine-tuned quantized model
    generator: nn.Module | None = field(default=None, repr=False)

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("fp32_top1", "ptq_top1", "quant_top1", "curve", "seconds",
                                               "config", "resumed_from")}


# ------------------------------------------------------------------------------------- checkpoint
def save_checkpoint(path: Path, state: dict) -> None:
    """Atomic write (a crash mid-save leaves the previous checkpoint intact)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"format": CHECKPOINT_FORMAT, **state}, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path, cfg: QATConfig) -> dict:
    """A checkpoint of this configuration (``epochs`` may differ: a run can be extended)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise DataError(f"cannot read the QAT checkpoint {path}: {type(exc).__name__}: "
                        f"{str(exc).splitlines()[0] if str(exc) else 'unreadable'}") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise DataError(f"{path} is not a QAT checkpoint of this version")
    check_checkpoint(state, path)
    saved, now = state["config"], cfg.to_dict()
    diff = sorted(k for k in now if k != "epochs" and saved.get(k) != now[k])
    if diff:
        raise ConfigError(f"the checkpoint {path} was made with other settings ({', '.join(diff)}); "
                          "use the same settings to resume, or another checkpoint file")
    return state


CHECKPOINT_FIELDS = {"config": dict, "epoch": int, "source": dict, "ptq_top1": (int, float), "curve": list,
                     "seconds": (int, float)}


def check_checkpoint(state: dict, path: Path) -> None:
    """Every field a resume reads, of the type it needs (a damaged or hand-edited file used to end in
    KeyError/AttributeError/TypeError); a negative epoch would run extra epochs."""
    for name, kind in CHECKPOINT_FIELDS.items():
        if not isinstance(state.get(name), kind) or isinstance(state.get(name), bool):
            raise DataError(f"the QAT checkpoint {path} is damaged: {name!r} is missing or not a {_kind(kind)}")
    if state["epoch"] < 0 or state["seconds"] < 0 or not all(isinstance(row, dict) for row in state["curve"]):
        raise DataError(f"the QAT checkpoint {path} is damaged: a negative epoch or time, or a malformed curve")
    if ("model" in state) != ("opt" in state) or not all(isinstance(state.get(k, {}), dict) for k in ("model", "opt")):
        raise DataError(f"the QAT checkpoint {path} is damaged: its model and optimizer states do not match")


def _kind(kind) -> str:
    return " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))


# ------------------------------------------------------------------------------------- training
def student_step(q: nn.Module, batch, opt: torch.optim.Optimizer, cfg: QATConfig, step: int) -> dict[str, float]:
    """One SGD step of the quantized model on a batch: KD from the FP32 logits + CE on the labels."""
    x, y, teacher_logits = batch
    tracking = RangeEMA(q, cfg.range_momentum, cfg.calibrator) if cfg.range_momentum < 1 else nullcontext()
    with tracking:
        out = q(x)
    kd = kd_loss(out, teacher_logits, cfg.kd_temperature)
    ce = F.cross_entropy(out, y)
    loss = cfg.kd_weight * kd + cfg.ce_weight * ce
    if not torch.isfinite(loss):
        raise NumericalError(f"the quantized model's loss became {loss.item()} at step {step + 1} "
                             "(lower model_lr)", iteration=step + 1)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    refresh_weight_ranges(q)
    return {"loss": loss.item(), "kd": kd.item(), "ce": ce.item()}


def cosine_lr(base: float, step: int, total: int) -> float:
    return 0.5 * base * (1 + math.cos(math.pi * min(step, total) / max(total, 1)))


def make_source(teacher: nn.Module, spec, cfg: QATConfig, train_data, device):
    shape = tuple(spec.input_shape)
    if not cfg.generative:
        if train_data is None:
            from ..data import real_split
            train_data = real_split(spec.name, "train")
        return RealBatches(*train_data, teacher=teacher, batch=cfg.batch_size, seed=cfg.seed, device=device)
    with torch.random.fork_rng(devices=[]):  # seeded init without touching the caller's global RNG
        torch.manual_seed(cfg.seed)
        gen = ConditionalGenerator(shape, spec.num_classes, cfg.latent_dim, cfg.generator_width, cfg.generator_cond)
    targets = bn_targets(teacher, torch.zeros((2, *shape), device=device))
    objective = GeneratorObjective(teacher, shape, cfg.batch_size, cfg.generator_loss(), targets, cfg.seed, device)
    return GeneratedBatches(gen, teacher, objective, cfg.generator_lr, cfg.batch_size, cfg.seed, device)


@dataclass
class RunState:
    """Everything a checkpoint restores besides the batch source."""
    q: nn.Module | None = None                 # the quantized model, from the end of the warmup on
    opt: torch.optim.Optimizer | None = None
    ptq_top1: float = math.nan
    curve: list[dict] = field(default_factory=list)
    epoch: int = 0                             # finished epochs, warmup included
    seconds: float = 0.0                       # spent in earlier sessions of this run

    def state_dict(self, cfg: QATConfig, source, seconds: float) -> dict:
        state = {"config": cfg.to_dict(), "epoch": self.epoch, "source": source.state_dict(),
                 "ptq_top1": self.ptq_top1, "curve": self.curve, "seconds": self.seconds + seconds}
        if self.q is not None:
            state.update(model=self.q.state_dict(), opt=self.opt.state_dict())
        return state


def resume(path: Path, cfg: QATConfig, fp: nn.Module, source) -> RunState:
    state = load_checkpoint(path, cfg)
    if state["epoch"] > cfg.warmup + cfg.epochs:
        done = state["epoch"] - cfg.warmup
        raise ConfigError(f"the checkpoint {path} has already trained {done} QAT epochs, more than "
                          f"epochs={cfg.epochs}: ask for at least {done}")
    run = RunState(ptq_top1=state["ptq_top1"], curve=state["curve"], epoch=state["epoch"], seconds=state["seconds"])
    try:  # the states' insides: names, shapes and types as this code makes them
        source.load_state_dict(state["source"])
        if "model" in state:
            run.q, _ = convert(fp, cfg.wbits, cfg.abits)  # the structure; weights and ranges come from the file
            run.q.load_state_dict(state["model"])
            run.opt = make_optimizer(run.q, cfg)
            run.opt.load_state_dict(state["opt"])
    except (KeyError, AttributeError, TypeError, ValueError, RuntimeError, IndexError) as exc:
        raise DataError(f"the QAT checkpoint {path} is damaged: {type(exc).__name__}: "
                        f"{str(exc).splitlines()[0] if str(exc) else 'unreadable'}") from None
    return run


def make_optimizer(q: nn.Module, cfg: QATConfig) -> torch.optim.Optimizer:
    return torch.optim.SGD(q.parameters(), lr=cfg.model_lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0,
                           weight_decay=cfg.weight_decay)


def run_epoch(epoch: int, run: RunState, source, cfg: QATConfig, progress: ProgressFn, cancel: CancelFn) -> dict:
    """One epoch of steps; returns the mean of every loss part."""
    warmup, iters = cfg.warmup, cfg.iters_per_epoch
    sums: dict[str, float] = {}
    for it in range(iters):
        step = epoch * iters + it
        check_cancel(cancel, partial=run.curve)
        batch, parts = source.next(step, train=epoch < warmup or cfg.train_generator_in_qat)
        if epoch >= warmup:
            for g in run.opt.param_groups:
                g["lr"] = cosine_lr(cfg.model_lr, step - warmup * iters, cfg.epochs * iters)
            parts.update(student_step(run.q, batch, run.opt, cfg, step))
        for k, v in parts.items():
            sums[k] = sums.get(k, 0.0) + v
        if progress is not None:
            progress(Progress("qat" if epoch >= warmup else "generator warmup", step + 1, (warmup + cfg.epochs) * iters,
                              parts.get("loss", parts.get("g_loss", math.nan)), parts, {"epoch": epoch + 1}))
    return {k: v / iters for k, v in sums.items()}


def train_qat(model: nn.Module, spec, cfg: QATConfig | None = None, progress: ProgressFn = None,
              cancel: CancelFn = None, checkpoint: str | Path | None = None, *,
              train_data: tuple[torch.Tensor, torch.Tensor] | None = None,
              test_data: tuple[torch.Tensor, torch.Tensor] | None = None, device="cpu") -> QATResult:
    """Fine-tune a quantized copy of ``model`` on generated or real batches; see the module docstring.

    ``spec`` supplies name, input_shape and num_classes (a :class:`~dsg_core.models.ModelSpec`).
    Real data default to the registry model's embedded splits; ``train_data`` / ``test_data``
    (images, labels) replace them. With ``checkpoint``, an existing file of the same settings is
    resumed (``epochs`` may be raised to extend a run) and the file is rewritten after every epoch.
    ``model`` is put in eval mode and otherwise left as it is. Raises Cancelled when ``cancel()`` is
    true (the last checkpoint stays), NumericalError on NaN/Inf losses.
    """
    cfg = (cfg or QATConfig()).validate()
    t0 = time.perf_counter()
    fp = model.eval()
    if test_data is None:
        from ..data import real_split
        test_data = real_split(spec.name, "test")
    test_x, test_y = (t[:cfg.eval_samples].to(device) for t in test_data)
    fp_logits = logits(fp, test_x)
    if not torch.isfinite(fp_logits).all():
        raise ModelError("the FP32 model gives NaN/Inf outputs on the test images: it cannot teach a quantized copy")
    teacher = fast_copy(fp, tuple(spec.input_shape), device)  # frozen; BN folded where exact (same function, faster)
    source = make_source(teacher, spec, cfg, train_data, device)
    path = Path(checkpoint) if checkpoint else None
    run = resume(path, cfg, fp, source) if path is not None and path.exists() else RunState()
    resumed_from = run.epoch

    def evaluate(epoch: int, parts: dict) -> None:
        res = evaluate_quantized(fp, run.q, test_x, test_y, fp_logits=fp_logits)
        run.curve.append({"epoch": epoch, "quant_top1": res["quant_top1"], "agreement": res["agreement"],
                          "kl": res["kl"], **parts})

    for epoch in range(run.epoch, cfg.warmup + cfg.epochs):
        if epoch == cfg.warmup and run.q is None:  # PTQ on the source's samples: QAT's starting point
            run.q = quantize_model(fp, source.calibration(cfg.calib_samples), cfg.quant_config()).eval()
            run.opt = make_optimizer(run.q.requires_grad_(True), cfg)
            evaluate(0, {})
            run.ptq_top1 = run.curve[0]["quant_top1"]
        parts = run_epoch(epoch, run, source, cfg, progress, cancel)
        if epoch >= cfg.warmup:
            evaluate(epoch + 1 - cfg.warmup, parts)
        run.epoch = epoch + 1
        if progress is not None:  # end of epoch: the accuracy curve so far and the generator's samples
            progress(Progress("qat" if epoch >= cfg.warmup else "generator warmup", run.epoch * cfg.iters_per_epoch,
                              (cfg.warmup + cfg.epochs) * cfg.iters_per_epoch, extra={
                                  "epoch": run.epoch, "curve": list(run.curve), **source.preview()}))
        if path is not None:
            save_checkpoint(path, run.state_dict(cfg, source, time.perf_counter() - t0))

    return QATResult(fp32_top1=100.0 * (fp_logits.argmax(1) == test_y).float().mean().item(),
                     ptq_top1=run.ptq_top1, quant_top1=run.curve[-1]["quant_top1"], curve=run.curve,
                     seconds=run.seconds + time.perf_counter() - t0, config=cfg.to_dict(), resumed_from=resumed_from,
                     model=run.q.eval(), generator=getattr(source, "generator", None))
