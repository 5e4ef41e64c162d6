from .deformable_sampling import DeformableSamplingPlugin
from .dynamic_routing import DynamicRoutingPlugin
from .plugin_config import PluginConfig
from .stable_sam import StableSam
