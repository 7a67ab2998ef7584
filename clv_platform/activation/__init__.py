"""activation/*: write the model outputs back to where marketers act (Klaviyo profiles, Shopify customers)."""
