"""Topic tagging without Ray: the keyword matcher (Tables 1–2) and the semantic matcher."""
