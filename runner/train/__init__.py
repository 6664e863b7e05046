"""The one training loop that every recipe plugs into."""
