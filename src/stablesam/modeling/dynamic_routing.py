"""Dynamic Routing Plugin (DRP): the prompt's own token decides how much to trust the DSP."""

import torch
from torch import nn


class DynamicRoutingPlugin(nn.Module):
    """t_o (B, C) -> α (B, 2): MLP with LayerNorm and GELU, then MLP, then softmax.

    α1 weighs the deformed features x*_{p+Δp}, α2 the regular features x_p. The softmax keeps
    α1 + α2 = 1, so with an identity DSP the mix is exactly x_p; the last layer starts at zero,
    giving α = (0.5, 0.5) for every prompt.
    """

    def __init__(self, embed_dim: int = 256, hidden_dim: int = 32):
        super().__init__()
        self.fc1 = nn.Linear(embed_dim, hidden_dim)
        self.norm = nn.LayerNorm(hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, 2)
        nn.init.zeros_(self.fc2.weight)
        nn.init.zeros_(self.fc2.bias)

    def forward(self, token: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.fc2(self.act(self.norm(self.fc1(token)))), dim=-1)
