"""Applications: PosePredictor (predictor.py), tracking (tracking.py), video (video.py), prediction on files and
folders (predict_files.py) and the demo (demo.py)."""
