"""convscope's benchmark suite (never part of the tests): `make bench` or `python -m bench`."""
