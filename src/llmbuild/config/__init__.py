"""Configuration: the structured-config schema, Hydra composition (with its private API in one
module), validation rules a type cannot say, and errors explained to people."""
