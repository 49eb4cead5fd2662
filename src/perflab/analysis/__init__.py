"""Pure DataFrame -> DataFrame analysis of stored results: stats, breakdowns, comparisons, rooflines."""
