"""Training stage: tf.data input (data.py), model zoo (models.py), the MLflow-tracked training
run (train.py) and the TFLite export the edge service pulls (export.py).

Importing this package does no work and pulls in no TensorFlow: import the submodules.
"""
