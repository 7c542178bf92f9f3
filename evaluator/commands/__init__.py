"""One module per `python -m evaluator` command."""
