"""Evaluation: predicting a split with flip and multi-scale test (inference.py, evaluate.py), the metrics (metrics.py),
and scoring prediction files against ground truth (scoring.py, ground_truth.py, prediction_files.py, report.py)."""
