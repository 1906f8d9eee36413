"""Records -> tables, figures and the comparison with the paper's published numbers."""
