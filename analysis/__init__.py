"""The analysis layer: reads run and study folders offline (no Ray, no training code)."""
