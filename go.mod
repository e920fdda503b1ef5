module github.com/sdsafety/safety

go 1.26.0

require (
	github.com/sugarme/gotch v0.9.1
	golang.org/x/image v0.48.0
	golang.org/x/text v0.44.0
)
