"""Sales statistics: purchases, revenue and customers per local day."""
