"""Where SAM 3's interactive tracker sits in the model objects this family serves."""

from torch import nn


def tracker_of(model: nn.Module) -> nn.Module:
    """The interactive tracker (Sam3TrackerBase) of a SAM 3 image model, or the tracker itself."""
    predictor = getattr(model, "inst_interactive_predictor", None)
    return model if predictor is None else predictor.model
