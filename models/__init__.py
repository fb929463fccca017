"""SpikeForge's network side: conversion-oriented transformers, conversion to the integer SNN
graph, the graph's file format, the functional reference executor and the model zoo.

Knows nothing of hardware. PyTorch is needed only for training (:mod:`.torch_model`,
:mod:`.train`).
"""

from .architecture import ModelConfig
from .checkpoint import FloatCheckpoint, load_checkpoint, save_checkpoint
from .convert import convert
from .datasets import Dataset, load_digits, load_npz_dataset
from .errors import ConversionError, DatasetError, FileFormatError, GraphError, SpikeForgeError
from .executor import SNNRun, run_snn
from .float_model import float_forward
from .graph import SNNGraph
from .graph_io import load_graph, save_graph
from .integer_ann import AnnRun, run_integer_ann
from .zoo import available_models, load_model

__all__ = [
    "AnnRun",
    "ConversionError",
    "Dataset",
    "DatasetError",
    "FileFormatError",
    "FloatCheckpoint",
    "GraphError",
    "ModelConfig",
    "SNNGraph",
    "SNNRun",
    "SpikeForgeError",
    "available_models",
    "convert",
    "float_forward",
    "load_checkpoint",
    "load_digits",
    "load_graph",
    "load_model",
    "load_npz_dataset",
    "run_integer_ann",
    "run_snn",
    "save_checkpoint",
    "save_graph",
]
