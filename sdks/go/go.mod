module github.com/msb-sandbox/msb-go

go 1.19
