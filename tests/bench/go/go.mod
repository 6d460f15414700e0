module netpolld.bench/gobaseline

go 1.19
