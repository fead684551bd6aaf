# A module, not a root: it declares the providers its modules need and configures none.
# Each environment (envs/<env>/versions.tf) configures the aws provider, region and tags.
terraform {
  required_version = ">= 1.6"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.60"
    }
    random = {
      source  = "hashicorp/random"
      version = "~> 3.6"
    }
  }
}
