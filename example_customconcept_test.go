package safety_test

import (
	"context"
	"fmt"
	"image"
	_ "image/png"
	"log"
	"os"

	"github.com/sdsafety/safety"
)

// A custom concept from text: a checker flags an image that its built-in concepts pass.
//
// The models here are the repository's tiny golden ones: a safety checker with random weights and
// a tiny CLIP whose vision tower is that checker's, so text and image embeddings share one space,
// as CLIP ViT-L/14's do for the published checker (use openai/clip-vit-large-patch14 with
// CompVis/stable-diffusion-safety-checker). With random weights a text means nothing, so the
// threshold is not a meaningful one: the Python reference's cosine between this image and the text
// embedding is 0.0780 (testdata/golden/text/expected.json, "concepts", from
// reference/make_text_golden.py), and the example sets the threshold 0.05 below it, 0.028, which
// makes the concept fire with a score of 0.050 exactly when this module computes the reference's
// cosine. With the real models, pick thresholds on validation images instead.
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

	// The honest part: the threshold comes from a measured cosine (the reference's 0.0780), not
	// from the text.
	const threshold = 0.028
	if err := checker.AddConcept("weapon", "a photo of a weapon", threshold); err != nil {
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
