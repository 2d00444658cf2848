"""batchmix: hybrid-batch training and LAReQA evaluation for multilingual dense retrievers."""

__version__ = "0.1.0"
