"""A federated logistic regression run by modelchain's Flower strategy."""
