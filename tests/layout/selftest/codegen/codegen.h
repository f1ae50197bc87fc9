/* Documents <base>.bits, <base>.g and <base>.h: ".bits" in a comment is fine. */
int cg_packed_words(int K);
