"""The training process: config, dataset -> batches with loss masks, the loop."""
