"""The main job (`make demo`): see :mod:`mrse.demo.main`."""

from mrse.demo.main import DemoConfig, run_demo

__all__ = ["DemoConfig", "run_demo"]
