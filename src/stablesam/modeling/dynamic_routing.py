"""Dynamic Routing Plugin (DRP): the prompt's own token decides how much to trust the DSP."""

from typing import Optional

import torch
from torch import nn

from ..precision import autocast_enabled
from .box_fit import FitGate


class DynamicRoutingPlugin(nn.Module):
    """t_o (B, n_inputs * C) -> α (B, 2): MLP with LayerNorm and GELU, then MLP, then softmax(z / T).

    α1 weighs the deformed features x*_{p+Δp}, α2 the regular features x_p. The softmax keeps
    α1 + α2 = 1, so with an identity DSP the mix is exactly x_p; the last layer starts at zero,
    giving α = (0.5, 0.5) for every prompt. n_inputs > 1: t_o is the concatenation of the routing
    token and the extra inputs of `PluginConfig.routing_inputs`; T is `routing_temperature`.
    fit_gate: with the routing input "fit", the mode of the `box_fit.FitGate` that adds its term
    to the logits z ("both" or "close"); None without it.
    """

    def __init__(self, embed_dim: int = 256, hidden_dim: int = 32, n_inputs: int = 1, temperature: float = 1.0,
                 fit_gate: Optional[str] = None):
        super().__init__()
        self.fc1 = nn.Linear(embed_dim * n_inputs, hidden_dim)
        self.norm = nn.LayerNorm(hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, 2)
        self.temperature = temperature
        nn.init.zeros_(self.fc2.weight)
        nn.init.zeros_(self.fc2.bias)
        self.fit_gate = FitGate(fit_gate) if fit_gate else None

    def forward(self, token: torch.Tensor, fit: Optional[torch.Tensor] = None) -> torch.Tensor:
        """token: (B, n_inputs * C); fit: (B, 2) = (box fit, has a box), read by the fit gate.
        Returns α (B, 2), in fp32 also under bf16 / fp16 autocast (the plugins run in fp32)."""
        if autocast_enabled(token.device.type):
            with torch.autocast(device_type=token.device.type, enabled=False):
                return self.forward(token.float(), None if fit is None else fit.float())
        z = self.fc2(self.act(self.norm(self.fc1(token))))
        if self.fit_gate is not None:
            if fit is None:
                raise RuntimeError("the routing input 'fit' needs the mask decoder's own forward (its hook "
                                   "measures the fit); this caller bypasses it")
            z = z + self.fit_gate(fit[:, 0], fit[:, 1])
        return torch.softmax(z if self.temperature == 1.0 else z / self.temperature, dim=-1)
