package safety_test

import (
	"context"
	"fmt"
	"image"
	_ "image/png"
	"log"
	"math"
	"os"

	"github.com/sdsafety/safety"
)

// A custom concept from text: a checker flags an image that its built-in concepts pass.
//
// The models here are the repository's tiny golden ones: a safety checker with random weights and
// a tiny CLIP whose vision tower is that checker's, so text and image embeddings share one space,
// as CLIP ViT-L/14's do for the published checker (use openai/clip-vit-large-patch14 with
// CompVis/stable-diffusion-safety-checker). With random weights a text means nothing, so the
// threshold is not a meaningful one: the example measures the cosine between this image and the
// text embedding and sets the threshold 0.05 below it, which makes the concept fire. With the real
// models, pick thresholds on validation images instead.
func Example_customConcept() {
	ctx := context.Background()
	checker, err := safety.Load("testdata/golden/models/tiny_quickgelu",
		safety.WithDevice(safety.DeviceCPU), safety.WithCustomConceptsCount(true))
	if err != nil {
		log.Fatal(err)
	}
	defer checker.Close()
	enc, err := safety.LoadTextEncoder("testdata/golden/text/clip", safety.WithDevice(safety.DeviceCPU))
	if err != nil {
		log.Fatal(err)
	}
	defer enc.Close()
	if err := checker.SetTextEncoder(enc); err != nil {
		log.Fatal(err)
	}

	f, err := os.Open("testdata/golden/images/rgb_300x200.png")
	if err != nil {
		log.Fatal(err)
	}
	img, _, err := image.Decode(f)
	f.Close()
	if err != nil {
		log.Fatal(err)
	}
	res, err := checker.Check(ctx, []image.Image{img})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("built-in concepts flag it:", res[0].NSFW)

	// The honest part: measure, then choose the threshold below the measured cosine.
	text := "a photo of a weapon"
	emb, err := enc.Embed(ctx, []string{text})
	if err != nil {
		log.Fatal(err)
	}
	threshold := float32(cosine(res[0].ImageEmbeds, emb[0]) - 0.05)
	if err := checker.AddConcept("weapon", text, threshold); err != nil {
		log.Fatal(err)
	}

	res, err = checker.Check(ctx, []image.Image{img})
	if err != nil {
		log.Fatal(err)
	}
	s := res[0].CustomScores[0]
	fmt.Printf("custom concept %q: score %.3f, hit %v\n", s.Name, s.Score, s.Hit)
	fmt.Println("built-in concepts hit:", res[0].BadConcepts)
	fmt.Println("flagged with custom concepts counting:", res[0].NSFW)
	// Output:
	// built-in concepts flag it: false
	// custom concept "weapon": score 0.050, hit true
	// built-in concepts hit: []
	// flagged with custom concepts counting: true
}

func cosine(a, b []float32) float64 {
	var ab, aa, bb float64
	for i := range a {
		ab += float64(a[i]) * float64(b[i])
		aa += float64(a[i]) * float64(a[i])
		bb += float64(b[i]) * float64(b[i])
	}
	return ab / math.Sqrt(aa*bb)
}
