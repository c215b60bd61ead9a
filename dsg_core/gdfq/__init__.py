"""Generative data-free quantization-aware training (GDFQ framework) with DSG's generator terms.

    from dsg_core.gdfq import QATConfig, train_qat
    result = train_qat(load_model("resnet20_mnist"), get_spec("resnet20_mnist"), QATConfig(generator="dsg"))
"""

from .generator import ConditionalGenerator
from .losses import GeneratorLoss, GeneratorObjective, batch_margins, batch_stats, group_stats, kd_loss, sda_reference
from .qat import GENERATORS, QATConfig, QATResult, train_qat
from .ranges import RangeEMA, refresh_weight_ranges

__all__ = ["ConditionalGenerator", "GeneratorLoss", "GeneratorObjective", "batch_margins", "batch_stats",
           "group_stats", "kd_loss", "sda_reference", "GENERATORS", "QATConfig", "QATResult", "train_qat",
           "RangeEMA", "refresh_weight_ranges"]
