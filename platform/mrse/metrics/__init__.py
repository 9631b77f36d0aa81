"""Pure ranking metrics (nDCG, recall, MRR, hit rate): below training, which validates with
them, and evaluation, which reports them."""
