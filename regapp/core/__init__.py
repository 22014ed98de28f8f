"""The registration core: plain services with no HTTP in them."""
