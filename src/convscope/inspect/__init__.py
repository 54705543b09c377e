"""Looking inside a trained network: hooks, layers and feature extraction underneath,
and one module per view on top."""
