"""Modeling: the plugins (DSP, DRP), their config, and `StableSam`, which attaches them to a SAM
of any family; plus the builder of small SAMs."""

from .deformable_sampling import DeformableSamplingPlugin
from .dynamic_routing import DynamicRoutingPlugin
from .plugin_config import PluginConfig
from .stable_sam import StableSam
