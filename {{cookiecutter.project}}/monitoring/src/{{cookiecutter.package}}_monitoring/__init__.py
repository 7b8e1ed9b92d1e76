"""The drift job: is the world the model serves still the one it was trained on?"""
