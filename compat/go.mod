module github.com/statsig-populator/statsig-populator/compat

go 1.26.0

// The worker's own module, from this checkout.
replace github.com/statsig-populator/statsig-populator => ../

// npm packages installed by run.sh are no Go packages.
ignore ./node_modules

require (
	github.com/redis/go-redis/v9 v9.23.0
	github.com/statsig-io/go-sdk v1.35.1
	github.com/statsig-populator/statsig-populator v0.0.0-00010101000000-000000000000
)

require (
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	github.com/google/uuid v1.3.0 // indirect
	github.com/statsig-io/ip3country-go v0.2.0 // indirect
	github.com/ua-parser/uap-go v0.0.0-20211112212520-00c877edfe0f // indirect
	go.uber.org/atomic v1.12.0 // indirect
	golang.org/x/sys v0.48.0 // indirect
	gopkg.in/yaml.v2 v2.4.0 // indirect
)
