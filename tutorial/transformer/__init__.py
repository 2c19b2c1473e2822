"""Chapter 07: a real transformer (all-MiniLM-L6-v2) run with the course's quantizers."""
