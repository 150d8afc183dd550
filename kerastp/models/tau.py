"""TAU (Tan et al., CVPR 2023): SimVP with Temporal Attention Units and the DDR loss."""

import keras  # noqa: E402  (kerastp.models.base checked the backend)

from kerastp.models.simvp import SimVP


@keras.saving.register_keras_serializable(package="kerastp")
class TAU(SimVP):
    """TAU: SimVP's encoder and decoder around a translator of `TAUBlock`s.

    Each block multiplies a statical large-kernel attention (intra-frame) by a dynamical
    channel attention (inter-frame, since time is folded into channels). Training adds the
    differential divergence regulariser: `compile()`'s default loss is
    `MSEWithDifferentialDivergence(divergence_weight, divergence_temperature)`
    (OpenSTL: `MSE + 0.1 * diff_div_reg`), so it is part of every `fit` step; metrics and
    evaluation report the plain errors.

    Args:
        input_frames, output_frames, height, width, channels: the forecasting contract.
        divergence_weight: float, weight of the regulariser (OpenSTL's `alpha`, 0.1).
        divergence_temperature: float, its softmax temperature (0.1).
        **kwargs: `SimVP` arguments (`hid_s`, `hid_t`, `num_spatial`, `num_temporal`, ...)
            except `model_type`, which is "tau".

    Call arguments:
        past: (B, input_frames, height, width, channels) float frames in model scale.
        training: bool.

    Example:
    >>> model = TAU(input_frames=4, output_frames=4, height=16, width=16, channels=1,
    ...             hid_s=8, hid_t=16, num_spatial=2, num_temporal=2, kernel_size=7)
    >>> model(keras.ops.zeros((2, 4, 16, 16, 1))).shape
    (2, 4, 16, 16, 1)

    Reference:
        Tan, Gao, Wu, Xu, Li, Li, "Temporal Attention Unit: Towards Efficient Spatiotemporal
        Predictive Learning", CVPR 2023, arXiv:2206.12126; OpenSTL `openstl/methods/tau.py`.
    """

    def __init__(
        self,
        input_frames=10,
        output_frames=10,
        height=64,
        width=64,
        channels=1,
        divergence_weight=0.1,
        divergence_temperature=0.1,
        **kwargs,
    ):
        model_type = kwargs.pop("model_type", "tau")
        if model_type != "tau":
            raise ValueError(f"TAU's `model_type` is 'tau', got model_type={model_type!r}")
        if not float(divergence_weight) >= 0.0:
            raise ValueError(
                f"`divergence_weight` must be >= 0, got divergence_weight={divergence_weight!r}"
            )
        if not float(divergence_temperature) > 0.0:
            raise ValueError(
                "`divergence_temperature` must be > 0, got "
                f"divergence_temperature={divergence_temperature!r}"
            )
        self.divergence_weight = float(divergence_weight)
        self.divergence_temperature = float(divergence_temperature)
        super().__init__(
            input_frames, output_frames, height, width, channels, model_type="tau", **kwargs
        )

    def default_loss(self):
        from kerastp.losses import MSEWithDifferentialDivergence

        return MSEWithDifferentialDivergence(
            weight=self.divergence_weight, temperature=self.divergence_temperature
        )

    def get_config(self):
        config = super().get_config()
        config.pop("model_type")
        config.update(
            {
                "divergence_weight": self.divergence_weight,
                "divergence_temperature": self.divergence_temperature,
            }
        )
        return config
