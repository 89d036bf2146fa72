"""Asset-key layers and the UI groups they belong to."""

INGESTION = "ingestion"
FEATURES = "features"
TRAINING = "training"
EVALUATION = "evaluation"
SERVING = "serving"
