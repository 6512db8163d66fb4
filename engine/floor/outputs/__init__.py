"""Line outputs: each verdict to the line (MQTT, HTTP webhook, JSON file drop), never losing one."""

from loupe.floor.outputs.base import FakeSink, OutputError, Sink
from loupe.floor.outputs.config import OutputsConfig, build_sinks, outputs_from_dict
from loupe.floor.outputs.delivery import Delivery

__all__ = ["Delivery", "FakeSink", "OutputError", "OutputsConfig", "Sink", "build_sinks", "outputs_from_dict"]
