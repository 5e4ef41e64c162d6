"""Dynamic Routing Plugin (DRP): the prompt's own token decides how much to trust the DSP."""

import torch
from torch import nn


class DynamicRoutingPlugin(nn.Module):
    """t_o (B, n_inputs * C) -> α (B, 2): MLP with LayerNorm and GELU, then MLP, then softmax(z / T).

    α1 weighs the deformed features x*_{p+Δp}, α2 the regular features x_p. The softmax keeps
    α1 + α2 = 1, so with an identity DSP the mix is exactly x_p; the last layer starts at zero,
    giving α = (0.5, 0.5) for every prompt. n_inputs > 1: t_o is the concatenation of the routing
    token and the extra inputs of `PluginConfig.routing_inputs`; T is `routing_temperature`.
    """

    def __init__(self, embed_dim: int = 256, hidden_dim: int = 32, n_inputs: int = 1, temperature: float = 1.0):
        super().__init__()
        self.fc1 = nn.Linear(embed_dim * n_inputs, hidden_dim)
        self.norm = nn.LayerNorm(hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, 2)
        self.temperature = temperature
        nn.init.zeros_(self.fc2.weight)
        nn.init.zeros_(self.fc2.bias)

    def forward(self, token: torch.Tensor) -> torch.Tensor:
        z = self.fc2(self.act(self.norm(self.fc1(token))))
        return torch.softmax(z if self.temperature == 1.0 else z / self.temperature, dim=-1)
