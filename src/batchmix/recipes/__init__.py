"""Recipes: the steps a command runs, shared by the commands that run them."""
