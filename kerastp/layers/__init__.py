"""Blocks and cells shared by kerastp models, one public class per file."""

from kerastp.layers.conv_lstm_cell import ConvLSTMCell
from kerastp.layers.conv_sc import ConvSC
from kerastp.layers.gated_update import GatedUpdate
from kerastp.layers.gsta import GSTABlock
from kerastp.layers.micro_cell import MicroTemporalCell
from kerastp.layers.st_lstm_cell import SpatioTemporalLSTMCell
from kerastp.layers.stacked_frame_attention import StackedFrameAttention
from kerastp.layers.stl_mixer import STLMixerBlock
from kerastp.layers.tau_block import TAUBlock

__all__ = [
    "ConvLSTMCell",
    "ConvSC",
    "GSTABlock",
    "GatedUpdate",
    "MicroTemporalCell",
    "STLMixerBlock",
    "SpatioTemporalLSTMCell",
    "StackedFrameAttention",
    "TAUBlock",
]
