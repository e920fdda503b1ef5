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

// Checking an image.Image with a model directory in Hugging Face layout. With the real model,
// use safety.FromPretrained(ctx, safety.DefaultModel) instead; the small model here ships with the
// repository.
func ExampleChecker_Check() {
	checker, err := safety.Load("testdata/golden/models/tiny_quickgelu", safety.WithDevice(safety.DeviceCPU))
	if err != nil {
		log.Fatal(err)
	}
	defer checker.Close()

	f, err := os.Open("testdata/golden/images/rgba_100x260.png")
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	img, _, err := image.Decode(f)
	if err != nil {
		log.Fatal(err)
	}

	results, err := checker.Check(context.Background(), []image.Image{img})
	if err != nil {
		log.Fatal(err)
	}
	r := results[0]
	fmt.Println("nsfw:", r.NSFW, "concepts:", r.BadConcepts, "special care:", r.SpecialConcepts)
	fmt.Printf("score of concept 15: %+.3f\n", r.ConceptScores[15])
	// Output:
	// nsfw: true concepts: [15] special care: [0 1]
	// score of concept 15: +0.005
}

// The same image, a little less strict: every concept score is lowered by 0.01.
func ExampleWithAdjustment() {
	checker, err := safety.Load("testdata/golden/models/tiny_quickgelu",
		safety.WithDevice(safety.DeviceCPU), safety.WithAdjustment(-0.01))
	if err != nil {
		log.Fatal(err)
	}
	defer checker.Close()
	pixels, err := checker.PreprocessFile("testdata/golden/images/rgba_100x260.png")
	if err != nil {
		log.Fatal(err)
	}
	results, err := checker.CheckPixels(context.Background(), pixels, 1)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("nsfw:", results[0].NSFW)
	// Output:
	// nsfw: false
}

// Loading with the weights copied rather than mapped, for a model directory that may be rewritten in
// place while the checker is open. Info says where the weights live.
func ExampleWithMappedWeights() {
	dir := "testdata/golden/models/tiny_quickgelu"
	for _, mapped := range []bool{true, false} {
		checker, err := safety.Load(dir, safety.WithDevice(safety.DeviceCPU), safety.WithMappedWeights(mapped))
		if err != nil {
			log.Fatal(err)
		}
		info := checker.Info()
		fmt.Printf("mapped=%v: weights mapped %v, copied %v\n", mapped, info.MappedBytes > 0, info.CopiedBytes > 0)
		checker.Close()
	}
	// Output:
	// mapped=true: weights mapped true, copied false
	// mapped=false: weights mapped false, copied true
}
