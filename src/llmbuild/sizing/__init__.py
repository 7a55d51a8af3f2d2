"""`doit size`: parameter counts and memory estimates from a model's shape, without loading it."""
