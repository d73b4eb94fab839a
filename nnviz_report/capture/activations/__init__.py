"""Activation functions: what the model uses, what inputs they really get, and their curves.

- :mod:`.kinds`: which torch.nn activation a module or functional call is, and its kind;
- :mod:`.curves`: an activation as a 1-D function, from torch.nn's module and autograd;
- :mod:`.custom`: modules that are activations in practice (a user's Swish);
- :mod:`.measure`: what one call's input and output show, and the derivatives after the pass;
- :mod:`.recorder`: what the forward pass's hooks record;
- :mod:`.summary`: the finished calls, curves and gallery the report shows.
"""
