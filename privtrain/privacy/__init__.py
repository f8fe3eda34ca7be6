"""Privacy mechanisms as dp-accounting events, and the accountants that compose them."""
