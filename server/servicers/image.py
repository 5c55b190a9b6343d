"""runtime.v1.ImageService: validate and call the adapter."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TypeAlias

import grpc

from pycrid.adapters.base import Adapter
from pycrid.api.cri import api_pb2 as cri
from pycrid.api.cri import api_pb2_grpc
from pycrid.server.servicers import validate
from pycrid.server.servicers.runtime import batches

Context: TypeAlias = grpc.aio.ServicerContext


class ImageServicer(api_pb2_grpc.ImageServiceServicer):
    def __init__(self, adapter: Adapter) -> None:
        self.adapter = adapter

    async def ListImages(
        self, request: cri.ListImagesRequest, context: Context
    ) -> cri.ListImagesResponse:
        return await self.adapter.list_images(request)

    async def StreamImages(
        self, request: cri.StreamImagesRequest, context: Context
    ) -> AsyncIterator[cri.StreamImagesResponse]:
        listed = await self.adapter.list_images(cri.ListImagesRequest(filter=request.filter))
        for batch in batches(list(listed.images)):
            yield cri.StreamImagesResponse(images=batch)

    async def ImageStatus(
        self, request: cri.ImageStatusRequest, context: Context
    ) -> cri.ImageStatusResponse:
        validate.image_spec(request.image)
        return await self.adapter.image_status(request)

    async def PullImage(
        self, request: cri.PullImageRequest, context: Context
    ) -> cri.PullImageResponse:
        validate.image_spec(request.image)
        return await self.adapter.pull_image(request)

    async def RemoveImage(
        self, request: cri.RemoveImageRequest, context: Context
    ) -> cri.RemoveImageResponse:
        validate.image_spec(request.image)
        return await self.adapter.remove_image(request)

    async def ImageFsInfo(
        self, request: cri.ImageFsInfoRequest, context: Context
    ) -> cri.ImageFsInfoResponse:
        return await self.adapter.image_fs_info(request)
