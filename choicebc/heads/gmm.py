"""robomimic's BC-GMM head (Mandlekar et al., CoRL 2021, ``GMMActorNetwork``), named ``gmm``.

What differs from the generic :class:`~choicebc.heads.mdn.MDNHead` is exactly robomimic's
defaults for ``GMMActorNetwork(num_modes=5, min_std=0.01, std_activation="softplus",
low_noise_eval=True, use_tanh=False)``:

* 5 modes; each mode's std is ``softplus(.) + min_std`` with ``min_std = 0.01`` (the MDN head's
  floor is 1e-4, which lets a mode collapse onto single noisy actions);
* no tanh-*Gaussian* (``use_tanh=False``): the likelihood is a plain Gaussian mixture. Like
  robomimic in that setting, the mode *means* are tanh-squashed, here into the action box
  ``(-mean_limit, mean_limit)`` (``mean_limit = 1`` is robomimic's normalised box and every
  shipped task's box); ``mean_limit=None`` leaves the means unbounded;
* low-noise evaluation: at evaluation robomimic sets every std to 1e-4 and samples the mixture,
  which returns (up to 1e-4) the mean of a mode drawn with probability ``pi_k``. ``mode``
  returns the mean of the most probable mode instead, so ``act`` stays deterministic (the SB3
  ``deterministic=True`` contract); ``prediction="mean"`` gives the mixture mean.

The mixture itself (for likelihoods and posteriors) always keeps the trained stds.
"""

from __future__ import annotations

import torch
from torch import Tensor

from choicebc.heads.base import Mixture, register_head
from choicebc.heads.mdn import MDNHead


@register_head
class GMMHead(MDNHead):
    """Gaussian mixture head with robomimic BC-GMM defaults (an MDN with tanh-bounded means).

    The weights, softplus stds, negative log-likelihood loss and the ``mode`` reduction are the
    MDN head's; this class changes the defaults and bounds the means.

    Args:
        in_features: Q, backbone feature size.
        out_features: D, action size.
        n_modes: K, number of Gaussian modes (robomimic: 5).
        min_std: added to each softplus std (robomimic: 0.01), in action units.
        mean_limit: means are ``mean_limit * tanh(.)``; ``None`` for unbounded means.
        prediction: ``"mode"`` (mean of the most probable mode, default) or ``"mean"``.
    """

    name = "gmm"

    def __init__(
        self,
        in_features: int,
        out_features: int,
        n_modes: int = 5,
        min_std: float = 0.01,
        mean_limit: float | None = 1.0,
        prediction: str = "mode",
    ) -> None:
        if not min_std > 0:
            raise ValueError(f"min_std must be > 0, got {min_std}")
        if mean_limit is not None and not mean_limit > 0:
            raise ValueError(f"mean_limit must be > 0 or None, got {mean_limit}")
        super().__init__(
            in_features, out_features, n_mixtures=n_modes, min_std=min_std, prediction=prediction
        )
        # config() must rebuild *this* head, with its own argument names
        self.hparams = {
            "n_modes": n_modes,
            "min_std": min_std,
            "mean_limit": mean_limit,
            "prediction": prediction,
        }
        self.mean_limit = mean_limit

    def forward(self, h: Tensor) -> Mixture:
        mixture = super().forward(h)
        if self.mean_limit is not None:
            mixture.mu = self.mean_limit * torch.tanh(mixture.mu)
        return mixture
