"""Training, evaluation and export of the PneumoniaMNIST CNN that the Swift worker runs."""
