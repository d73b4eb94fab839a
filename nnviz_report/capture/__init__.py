"""Everything that touches the user's model: state guard, forward hooks, functional
activations, parameter snapshots and checkpoints, and the autograd graph.

Nothing outside this package calls into the model; sections only see the plain data
captured here.
"""
