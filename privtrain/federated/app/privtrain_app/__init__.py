"""privtrain's federated recipe as a Flower App: thin wrappers around ``privtrain.federated``."""
