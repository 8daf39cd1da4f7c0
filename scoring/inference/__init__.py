"""The Flask-free inference core every scoring protocol adapts: rows in any accepted shape →
validated matrix → predictions (+ probabilities), for one row or thousands in one call.

``body`` parses request bodies once, guarded against hostile JSON; ``payloads`` turns each
protocol's request shape into a matrix; ``core`` predicts and checks the answers; ``tensors``
speaks the Open Inference Protocol's tensors and its binary extension. The HTTP views in
``scoring.api`` are thin adapters over these functions.
"""
