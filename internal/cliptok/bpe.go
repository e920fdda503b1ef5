package cliptok

import "container/heap"

// bytesToUnicode returns CLIP's (and GPT-2's) byte-level alphabet: the printable stand-in of each
// byte. The printable Latin-1 bytes stand for themselves ('!'..'~', '¡'..'¬', '®'..'ÿ'); the others,
// in byte order, get U+0100, U+0101, … Order of the vocabulary's first 256 entries: the printable
// bytes first, then the others ([byteOrder]).
func bytesToUnicode() [256]rune {
	var m [256]rune
	n := 0
	for b := 0; b < 256; b++ {
		if printableByte(b) {
			m[b] = rune(b)
		} else {
			m[b] = rune(256 + n)
			n++
		}
	}
	return m
}

func printableByte(b int) bool {
	return ('!' <= b && b <= '~') || (0xA1 <= b && b <= 0xAC) || (0xAE <= b && b <= 0xFF)
}

// byteOrder returns the bytes in the order of CLIP's vocabulary: printable bytes, then the others.
func byteOrder() []int {
	order := make([]int, 0, 256)
	for b := 0; b < 256; b++ {
		if printableByte(b) {
			order = append(order, b)
		}
	}
	for b := 0; b < 256; b++ {
		if !printableByte(b) {
			order = append(order, b)
		}
	}
	return order
}

// symbol is one element of a word during BPE: a vocabulary id and its neighbours (−1 for none).
type symbol struct {
	id         int
	prev, next int
	gone       bool // merged into its left neighbour
}

// candidate is a possible merge of the symbol at pos with its right neighbour.
type candidate struct {
	pos, rank, id int
}

// candidates is a min-heap by (rank, pos): the lowest-ranked merge first, the leftmost on a tie.
type candidates []candidate

func (c candidates) Len() int { return len(c) }
func (c candidates) Less(i, j int) bool {
	if c[i].rank != c[j].rank {
		return c[i].rank < c[j].rank
	}
	return c[i].pos < c[j].pos
}
func (c candidates) Swap(i, j int) { c[i], c[j] = c[j], c[i] }
func (c *candidates) Push(x any)   { *c = append(*c, x.(candidate)) }
func (c *candidates) Pop() any {
	old := *c
	x := old[len(old)-1]
	*c = old[:len(old)-1]
	return x
}

// bpe appends the ids of one pre-tokenised word to ids. The word's UTF-8 bytes become their
// byte-level symbols (the last one with "</w>"); then, as the tokenizers library does, the merge of
// lowest rank among adjacent pairs is applied (the leftmost of equal ones) until no pair has a merge.
// Queue entries made stale by an earlier merge are recognised by re-checking the pair.
func (t *Tokenizer) bpe(word string, ids []int) []int {
	n := len(word)
	if n == 0 {
		return ids
	}
	if n == 1 {
		return append(ids, t.byteEndID[word[0]])
	}
	syms := make([]symbol, n)
	for i := 0; i < n; i++ {
		id := t.byteID[word[i]]
		if i == n-1 {
			id = t.byteEndID[word[i]]
		}
		syms[i] = symbol{id: id, prev: i - 1, next: i + 1}
	}
	syms[n-1].next = -1

	q := make(candidates, 0, n)
	for i := 0; i+1 < n; i++ {
		if m, ok := t.merges[[2]int{syms[i].id, syms[i+1].id}]; ok {
			q = append(q, candidate{pos: i, rank: m.rank, id: m.id})
		}
	}
	heap.Init(&q)
	for q.Len() > 0 {
		top := heap.Pop(&q).(candidate)
		cur := &syms[top.pos]
		if cur.gone || cur.next < 0 {
			continue
		}
		right := &syms[cur.next]
		if m, ok := t.merges[[2]int{cur.id, right.id}]; !ok || m.id != top.id {
			continue // stale: one side changed since this entry was queued
		}
		cur.id = top.id
		right.gone = true
		cur.next = right.next
		if cur.next >= 0 {
			syms[cur.next].prev = top.pos
		}
		if cur.prev >= 0 {
			if m, ok := t.merges[[2]int{syms[cur.prev].id, cur.id}]; ok {
				heap.Push(&q, candidate{pos: cur.prev, rank: m.rank, id: m.id})
			}
		}
		if cur.next >= 0 {
			if m, ok := t.merges[[2]int{cur.id, syms[cur.next].id}]; ok {
				heap.Push(&q, candidate{pos: top.pos, rank: m.rank, id: m.id})
			}
		}
	}
	for i := 0; i >= 0; i = syms[i].next {
		ids = append(ids, syms[i].id)
	}
	return ids
}
