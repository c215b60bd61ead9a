"""Model registry: embedded MNIST models and torchvision ImageNet models, looked up by name."""

from . import embedded, imagenet  # noqa: F401  (registration side effect)
from .registry import (
                       ModelSpec,
                       bn_layer_names,
                       default_model_name,
                       get_spec,
                       is_user_model,
                       list_models,
                       load_model,
                       read_state_dict,
                       register_model,
                       register_user_model,
                       unregister_model,
)

__all__ = ["ModelSpec", "bn_layer_names", "default_model_name", "get_spec", "is_user_model", "list_models",
           "load_model", "read_state_dict", "register_model", "register_user_model", "unregister_model"]
